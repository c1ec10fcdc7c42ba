"""Reports of a trained model: metrics tables, bootstrap intervals and plots."""
