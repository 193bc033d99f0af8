"""Test support: a local Pub/Sub server and the Java emulator launcher."""
