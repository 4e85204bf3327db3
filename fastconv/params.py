"""Parameter counts: a conv layer against the fully connected layer with the same input and output."""
