"""One module per `convbench` verb, each with ``configure(parser)`` and ``run(args) -> int``."""
