"""HTTP routes of the API, one module per area of docs/api.md §1."""
