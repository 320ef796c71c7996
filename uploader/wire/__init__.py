"""The uploader's remote layer, one request at a time: requests built from the catalogue, the
HTTP client, the retry policy and server gate, the one retry loop (``exchange``) and the
server's capabilities. Imports nothing of send, replay, watch or cli."""
