"""Signal-processing building blocks shared by stages (no stage contract here)."""
