"""Live migration: the archive as one stream (checkpoint --export -, restore --import -).

stream    stdout/stdin as the archive's file, with a stall timeout and no stray writes
hello     the stream's first member and the receiver's pre-flight check of it
handshake the optional back channel: go/no-go before the freeze, then "restored"
delta     pre-copy: what changed in a tree between phase 1 and the freeze
memory    pre-copy of memory: phase 0's dump sent while the container runs, only changed pages after the freeze
sender    the sending flow (plain stream or two-phase pre-copy) around the checkpoint flow, local restore on failure
receiver  the receiving session (stdin, pre-flight, replies) that runs restore --import on the stream
request   MigrateSend and MigrateReceive, the typed requests the command layer builds
lazypages whether CRIU lazy-pages works here, and the fallback to the stream
"""
