"""The jobs behind the CLI's commands, one file per job (``fit``'s transfer verdict: :mod:`.baseline`)."""
