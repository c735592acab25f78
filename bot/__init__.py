"""Dreamgrid: a self-hosted, Midjourney-style Discord bot."""
