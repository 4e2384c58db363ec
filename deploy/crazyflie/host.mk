# Host build of the firmware app's portable core + generated policy, with the embedded checks:
#   make -f host.mk test POLICY=<dir with rl_policy.c/.h>   (default: policy/)
#   make -f host.mk arm                                       (Cortex-M4 objects + size, needs gcc-arm-none-eabi)
POLICY ?= policy
BUILD ?= build
CC ?= cc
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Werror -fstack-usage
ARM_CC ?= arm-none-eabi-gcc
ARM_CFLAGS ?= -std=c99 -O2 -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard -ffunction-sections \
              -fdata-sections -fstack-usage -Wall -Wextra -Werror

.PHONY: host test arm clean
host: $(BUILD)/rl_host

$(BUILD)/%.o: src/%.c src/rl_obs.h $(POLICY)/rl_policy.h | $(BUILD)
	$(CC) $(CFLAGS) -Isrc -I$(POLICY) -c $< -o $@
$(BUILD)/rl_policy.o: $(POLICY)/rl_policy.c $(POLICY)/rl_policy.h | $(BUILD)
	$(CC) $(CFLAGS) -I$(POLICY) -c $< -o $@
$(BUILD)/rl_host.o: host/rl_host.c src/rl_obs.h | $(BUILD)
	$(CC) $(CFLAGS) -Isrc -I$(POLICY) -c $< -o $@
$(BUILD)/rl_host: $(BUILD)/rl_host.o $(BUILD)/rl_obs.o $(BUILD)/rl_policy.o
	$(CC) $^ -o $@ -lm
$(BUILD):
	mkdir -p $@

# no dynamic allocation anywhere in what goes onto the drone; layout matches; stack per function listed
test: host
	@! nm -u $(BUILD)/rl_obs.o $(BUILD)/rl_policy.o | grep -E ' (malloc|calloc|realloc|free)$$' \
	  || (echo "dynamic allocation found"; exit 1)
	$(BUILD)/rl_host check
	@cat $(BUILD)/rl_obs.su $(BUILD)/rl_policy.su

arm: | $(BUILD)
	$(ARM_CC) $(ARM_CFLAGS) -Isrc -I$(POLICY) -c src/rl_obs.c -o $(BUILD)/rl_obs.arm.o
	$(ARM_CC) $(ARM_CFLAGS) -I$(POLICY) -c $(POLICY)/rl_policy.c -o $(BUILD)/rl_policy.arm.o
	arm-none-eabi-size $(BUILD)/rl_obs.arm.o $(BUILD)/rl_policy.arm.o

clean:
	rm -rf $(BUILD)
