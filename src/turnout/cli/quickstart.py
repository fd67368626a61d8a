"""placeholder"""
def quickstart() -> None:
    """Run the whole lifecycle end to end on bundled data."""
