"""Satellite mode: the speaker serves Home Assistant over the Wyoming protocol instead of
streaming to the Earmark cloud."""
