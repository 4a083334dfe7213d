"""The demo shop: a generated catalog and shoppers, how they are loaded into a running stack, the
storefront page (static/), the scripted walkthrough and the event replay."""

from pathlib import Path

# The storefront page and its assets, served by the stand-in's HTTP server at / and /static/.
STATIC_DIR = Path(__file__).parent / "static"
