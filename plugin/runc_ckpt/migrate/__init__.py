"""Live migration: the archive as one stream (checkpoint --export -, restore --import -).

stream    stdout/stdin as the archive's file, with a stall timeout and no stray writes
hello     the stream's first member and the receiver's pre-flight check of it
handshake the optional back channel: go/no-go before the freeze, then "restored"
delta     pre-copy: what changed in a tree between phase 1 and the freeze
sender    the sending flow (plain stream or two-phase pre-copy), local restore on failure
receiver  the stream members restore --import stages on top of a plain archive's
lazypages whether CRIU lazy-pages works here, and the fallback to the stream
"""
