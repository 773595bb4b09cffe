"""xds/gen"""
