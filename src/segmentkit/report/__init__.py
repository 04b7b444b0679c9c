"""What people read: figures, the training report and notebook review helpers."""
