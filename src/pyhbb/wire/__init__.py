"""Wire format: framing, address encoding, keys, secure channel and generated protobuf."""
