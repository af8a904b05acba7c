"""koe (声): Japanese text dialogue corpora and sound collections to speech-model training data."""
