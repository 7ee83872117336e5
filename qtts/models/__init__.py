"""Model code shared by training and inference; names equal the released state-dict keys."""
