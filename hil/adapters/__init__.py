"""pcm-hil inside other frameworks a lab may already run: the chip as a QCoDeS instrument
(``qcodes``, the ``qcodes`` extra) and recorded runs as bluesky's event-model documents
(``bluesky``, the ``bluesky`` extra). Each module imports its framework when it is imported."""
