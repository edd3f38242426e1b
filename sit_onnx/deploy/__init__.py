"""Deployment targets for converted models."""
