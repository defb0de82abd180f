// One thread that runs submitted tasks in submission order, each completing a Work. Composite
// collectives (hierarchical, compressed) run their steps here, calling the blocking collectives
// of the communicators below them, so their async forms keep the same-order contract.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "comm/communicator.h"

namespace lowband::comm {

class SerialWorker {
 public:
  SerialWorker();
  ~SerialWorker();  // runs what was submitted, then stops
  SerialWorker(const SerialWorker&) = delete;
  SerialWorker& operator=(const SerialWorker&) = delete;
  std::shared_ptr<Work> submit(std::function<void()> task);

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<PendingWork>>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace lowband::comm
