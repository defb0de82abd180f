// The registry: every method's descriptor, defined next to its strategy.
#include "schedules/methods.h"

#include <cmath>
#include <map>
#include <mutex>

#include "runtime/error.h"

namespace lowband::schedules {

// Outer methods (strategy.cpp, diloco.cpp, co2.cpp).
extern const OuterMethodSpec kNoneMethod, kDdpMethod, kLocalSgdMethod, kDilocoMethod,
    kStreamingDilocoMethod, kCo2Method;
// Inner methods (gradient_sync.cpp, zero.cpp).
extern const InnerMethodSpec kDdpInnerMethod, kZero1Method, kZero2Method;

const std::vector<const OuterMethodSpec*>& outerMethods() {
  static const std::vector<const OuterMethodSpec*> all = {
      &kNoneMethod, &kDdpMethod, &kLocalSgdMethod, &kDilocoMethod, &kStreamingDilocoMethod,
      &kCo2Method};
  return all;
}

const std::vector<const InnerMethodSpec*>& innerMethods() {
  static const std::vector<const InnerMethodSpec*> all = {&kDdpInnerMethod, &kZero1Method,
                                                          &kZero2Method};
  return all;
}

const OuterMethodSpec& outerMethod(OuterMethod id) {
  const auto i = static_cast<std::size_t>(id);
  LB_REQUIRE(i < outerMethods().size() && outerMethods()[i]->id == id, runtime::ShapeError,
             "outer method " + std::to_string(i) + " has no descriptor");
  return *outerMethods()[i];
}

const InnerMethodSpec& innerMethod(InnerMethod id) {
  const auto i = static_cast<std::size_t>(id);
  LB_REQUIRE(i < innerMethods().size() && innerMethods()[i]->id == id, runtime::ShapeError,
             "inner method " + std::to_string(i) + " has no descriptor");
  return *innerMethods()[i];
}

const char* methodsReading(uint32_t key) {
  static std::mutex mutex;
  static std::map<uint32_t, std::string> texts;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = texts.find(key);
  if (it != texts.end()) return it->second.c_str();
  std::vector<std::string> names;
  bool all_but_none = true;
  for (const OuterMethodSpec* m : outerMethods()) {
    if (m->reads(key))
      names.emplace_back(m->name());
    else if (m->id != OuterMethod::None)
      all_but_none = false;
  }
  std::string text = "sync.outer.method is ";
  if (all_but_none && !outerMethod(OuterMethod::None).reads(key)) {
    text += "not none";
  } else {
    for (std::size_t i = 0; i < names.size(); ++i)
      text += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  }
  return texts.emplace(key, std::move(text)).first->second.c_str();
}

LayoutFields outerLayout(const OuterConfig& outer, int64_t layers) {
  const OuterMethodSpec& spec = outerMethod(outer.method);
  LayoutFields out = {{"outer", spec.name()}};
  if (spec.reads(kKeyCodec) && outer.codec != runtime::Codec::None)
    out.emplace_back("outer codec", std::string(runtime::codecName(outer.codec)) +
                                        (outer.error_feedback ? " with error feedback" : ""));
  spec.layout(outer, layers, out);
  return out;
}

LayoutFields innerLayout(const InnerConfig& inner) {
  const InnerMethodSpec& spec = innerMethod(inner.method);
  LayoutFields out = {{"inner", spec.name()}};
  for (const auto& [tier, codec] : inner.codec)
    out.emplace_back(tier + " gradients", std::string(runtime::codecName(codec)) +
                                              (inner.error_feedback ? " with error feedback" : ""));
  spec.layout(inner, out);
  return out;
}

std::vector<OuterSchedule::Fragment> contiguousFragments(int64_t layers, int64_t fragments,
                                                         int64_t period) {
  std::vector<OuterSchedule::Fragment> out;
  const int64_t per = (layers + fragments - 1) / fragments;
  for (int64_t p = 0; p < fragments && p * per < layers; ++p)
    out.push_back({std::llround(static_cast<double>(p * period) / static_cast<double>(fragments)),
                   p * per, std::min(layers, (p + 1) * per)});
  return out;
}

}  // namespace lowband::schedules
