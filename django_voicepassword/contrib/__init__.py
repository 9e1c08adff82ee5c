"""Optional integrations, each importing its third-party package only inside its own folder."""
