"""Datasets: loading (built-in and bring-your-own), and the leave-one-out split."""
