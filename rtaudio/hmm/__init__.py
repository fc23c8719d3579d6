"""HMM keyword spotting: left-to-right keyword HMMs against a filler model, decoded frame by frame."""
