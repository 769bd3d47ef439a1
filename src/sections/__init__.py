"""Exact 1-D and 2-D sections of the linear-region partition."""
