"""The browser editor: a trained run served as a web page and a JSON API
(`python -m launch.serve`; docs/editor.md)."""
