"""The binary cache: a shacache/shadir client (networkcache) and a small server."""
