"""The journal format (tables, migrations, blob store) and the endpoint catalogue."""
