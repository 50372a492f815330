"""Configuration: option sources with the official precedence, and each server's options."""
