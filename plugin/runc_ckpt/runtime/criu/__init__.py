"""Small readers of CRIU's own files, with no protobuf dependency."""

# An image dir's link to the dump it builds on (criu/include/image.h CR_PARENT_LINK). Here, not in
# incremental, so that what only looks for the link (restore --import, state/predump) loads no page hashing.
PARENT_LINK = "parent"
