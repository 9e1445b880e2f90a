"""Everything runc-ckpt knows about checkpoint archives, in one library layer.

layout: member names (podman's layout plus our manifest); compression:
detection and streams; manifest: build and verify; writer/reader: the
streaming tar I/O.
"""
