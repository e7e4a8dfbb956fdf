"""Token issuing and verification."""
