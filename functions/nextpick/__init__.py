"""nextpick serving package: domain logic, AWS adapters and Lambda handlers.

Nothing here imports TensorFlow; the only ML runtime on the serving path is LiteRT.
"""
