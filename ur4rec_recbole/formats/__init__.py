"""File formats read and written: RecBole's atomic files (checked before reading)."""
