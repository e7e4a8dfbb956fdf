"""Small services that follow users through userbus events: copy one to start yours."""
