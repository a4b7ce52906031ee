"""Subcommands of the `v1sweep` CLI; see `v1sweep.cli`."""
