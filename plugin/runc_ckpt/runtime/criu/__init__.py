"""Small readers of CRIU's own files, with no protobuf dependency."""
