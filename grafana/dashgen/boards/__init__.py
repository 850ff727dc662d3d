"""One module per dashboard, each with `build() -> Board`."""
