# Sourced by the shell tests: a small real-text data set and the lines of a tiny GPT on it.
# Needs $src (the source directory).

# tiny_data DIR: byte shards of the project's own text in DIR/data (train_*.bin, val_*.bin).
tiny_data() {
  head -c 400000 "$src/README.md" "$src"/launcher/*.cpp "$src"/comm/*.cpp >"$1/corpus.txt"
  python3 "$src/scripts/prepare_text.py" "$1/corpus.txt" "$1/data" >/dev/null
}

# tiny_model DIR: the device, model and data lines of a 2-block GPT on DIR/data.
tiny_model() {
  cat <<YAML
device: cpu
model: {kind: gpt, n_layer: 2, d_model: 32, n_head: 2, seq_len: 32, vocab: 256}
data: {train: $1/data/train_*.bin, val: $1/data/val_*.bin, batch_size: 4}
YAML
}
