"""runc-ckpt's own subcommands, one module each, each with run(invocation) -> exit code."""
