"""Other front doors to the same labs, generated from the same run plan as `labctl run`
(so they cannot drift from it): a devcontainer.json for VS Code, a Compose file.

A RunPlan in, a document out: nothing here talks to an engine."""
