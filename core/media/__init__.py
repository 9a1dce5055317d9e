"""The media layer: video sources, frame decoding, thumbnails, browser-playable copies, samples and uploads."""
