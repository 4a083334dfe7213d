"""Pure domain logic: no boto3, no LiteRT, no environment. Adapters implement the ports in `ports`."""
