"""Data: the synthetic knee phantom, label model, manifests, splits, the torch dataset and the OAI importer."""
