"""Key-point categories and the device kind that serves each: which indicator a binding can count for."""

# DESIGN, "Registry contract": the six categories, each the denominator of one sensor indicator.
CATEGORIES = ("security_point", "public_place", "transit_stop", "water_source", "air_hotspot",
              "wastewater_facility")

# A device of kind K counts for a point only through the category K serves (#17 cctv, #22 wifi_ap, #9
# bus_display, #18 water_monitor, #19 air_monitor, #21 wastewater_station).
CATEGORY_SERVED_BY = {
    "cctv": "security_point", "wifi_ap": "public_place", "bus_display": "transit_stop",
    "water_monitor": "water_source", "air_monitor": "air_hotspot", "wastewater_station": "wastewater_facility",
}
