"""Stage modules of the Consensa pipeline."""
