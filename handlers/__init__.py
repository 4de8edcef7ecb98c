"""Example functions. Deploy your own next to them; `_HANDLER=handlers.<module>.<function>`."""
