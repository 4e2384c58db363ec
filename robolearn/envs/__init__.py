"""Tasks as batched environments; `registry.TASKS` lists them."""
