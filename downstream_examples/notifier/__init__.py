"""The notifier service: a welcome mail on registration, a notice on a password change."""
