"""The routing computation as it was before explaincost (main at 0084b6e), kept to compare against:
decide, explain, ties, scoring and separation copied verbatim, their imports of each other pointed
here (and three ``type: ignore`` where they hand the copy's ``Assign`` to ``keyed``). Never
changed otherwise: it is what the new code must agree with byte for byte."""
