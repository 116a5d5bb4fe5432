"""The Discord interface: a thin layer over bot.services and bot.core."""
