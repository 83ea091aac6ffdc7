"""A local X API v2 simulator: realistic accounts and tweets over real HTTP, with faults on demand."""
