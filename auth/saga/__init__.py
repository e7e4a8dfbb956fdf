"""The auth side of the registration saga: following the profile service's answers, expiring."""
