"""The jobs behind the CLI's commands, one file per command (``fit``'s transfer verdict: :mod:`.baseline`).

Each takes a typed config (:class:`~.fit.FitConfig`, :class:`~.predict.PredictConfig`, ...) and returns a JSON-ready
dict; the CLI only maps its flags to the config and prints. Errors name the config's parameters, which the CLI
spells as its flags.
"""
